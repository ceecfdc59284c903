"""SliceSpawner and the batch backends it (and the portal API) books slices through."""
