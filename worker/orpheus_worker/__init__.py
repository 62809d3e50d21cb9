"""orpheus_worker."""
