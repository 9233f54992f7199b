"""embed-dagster: daily comment → embedding → topic pipeline as Dagster assets."""
