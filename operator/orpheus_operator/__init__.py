"""orpheus_operator."""
