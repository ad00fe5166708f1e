"""Running a job: recipes to lazy graphs (pipeline), the job in named phases (run), the Dask
cluster, staging, the only owner of the layer cache, logging and the bundled data paths."""
