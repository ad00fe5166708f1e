"""What a run hands to people: GeoPackage, COG GeoTIFFs with QGIS styles, tables (one CSV/XLSX
writer), the offline Folium map, the HTML report, route and hosting reports, and their tags."""
