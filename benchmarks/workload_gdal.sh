#!/usr/bin/env bash
# The benchmark workload as a GDAL command-line chain, the way GIS staff would script it.
#
# usage: workload_gdal.sh DATA_DIR OUT_DIR XMIN YMIN XMAX YMAX RES_M [INTERMEDIATE_CO]
#
#   1. gdaldem slope (Horn, -compute_edges)                                  -> tmp/slope.tif
#   2. gdal_rasterize of the redlines buffered by 500 m (SQLite ST_Buffer)   -> tmp/redline.tif
#   3. gdal_rasterize of substations + lines, gdal_proximity.py (metres)     -> tmp/dist.tif
#   4. gdal_calc.py for mask.tif (uint8) and score.tif (float32, nodata -9999: gdal_calc 3.6
#      blends nodata arithmetically, so a NaN nodata value would turn every pixel into NaN)
#
# Multithreading where GDAL offers it: GDAL_NUM_THREADS=ALL_CPUS (multi-threaded block decoding)
# and -co NUM_THREADS=ALL_CPUS (multi-threaded DEFLATE compression). The GDAL utilities themselves
# compute on one core. Intermediate rasters use INTERMEDIATE_CO (default: tiled, uncompressed).
# Compressed intermediates are a trap: gdal_proximity.py writes scanlines in two passes, and on a
# tiled DEFLATE output that took 461 s instead of 5 s at 16 Mpx. Outputs are tiled DEFLATE like
# every other tool's.
# The script uses the system python's GDAL bindings (Debian python3-gdal) via /usr/bin/*.py.
set -euo pipefail

DATA=$1 OUT=$2 XMIN=$3 YMIN=$4 XMAX=$5 YMAX=$6 RES=$7
ICO=${8:-"-co TILED=YES -co BLOCKXSIZE=512 -co BLOCKYSIZE=512 -co BIGTIFF=IF_SAFER"}
OCO="-co TILED=YES -co BLOCKXSIZE=512 -co BLOCKYSIZE=512 -co COMPRESS=DEFLATE -co NUM_THREADS=ALL_CPUS -co BIGTIFF=IF_SAFER"
export GDAL_NUM_THREADS=ALL_CPUS
TMP="$OUT/tmp"
mkdir -p "$TMP"
GRID=(-te "$XMIN" "$YMIN" "$XMAX" "$YMAX" -tr "$RES" "$RES")
step() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  echo "STEP $1 $t0 $t1" >&2
}
# shellcheck disable=SC2086  # the creation-option strings are meant to split into words
{
step gdaldem slope "$DATA/dem.tif" "$TMP/slope.tif" -alg Horn -compute_edges -q $ICO

step gdal_rasterize -q -burn 1 -init 0 -ot Byte "${GRID[@]}" $ICO \
  -dialect sqlite -sql "SELECT ST_Buffer(geom, 500) FROM redlines" \
  "$DATA/constraints.gpkg" "$TMP/redline.tif"

step gdal_rasterize -q -burn 1 -init 0 -ot Byte -at "${GRID[@]}" $ICO -l substations \
  "$DATA/grid.gpkg" "$TMP/features.tif"
step gdal_rasterize -q -burn 1 -at -l lines "$DATA/grid.gpkg" "$TMP/features.tif"
step gdal_proximity.py -q "$TMP/features.tif" "$TMP/dist.tif" -values 1 -distunits GEO \
  -ot Float32 $ICO

step gdal_calc.py --quiet --hideNoData -A "$TMP/slope.tif" -B "$DATA/dem.tif" \
  -C "$TMP/redline.tif" --type Byte ${OCO//-co /--co } \
  --calc "(A >= 0) * (A <= 25) * (B != -9999) * (B <= 5000) * (C == 0)" \
  --outfile "$OUT/mask.tif" --overwrite

step gdal_calc.py --quiet -A "$TMP/slope.tif" -B "$DATA/dem.tif" -C "$TMP/redline.tif" \
  -D "$TMP/dist.tif" --type Float32 --NoDataValue -9999 ${OCO//-co /--co } \
  --calc "where((A <= 25) * (B <= 5000) * (C == 0), 0.6 * clip(1 - A / 25, 0, 1) + 0.4 * clip(1 - D / 50000, 0, 1), 0)" \
  --outfile "$OUT/score.tif" --overwrite
}
[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
