"""The docks and toolbar widgets: image browser, instance list, categories, model versions, training."""
