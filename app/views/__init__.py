"""The widgets of the main window: canvas, image browser, instance list, category panel, dialogs."""
