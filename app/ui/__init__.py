"""The widgets: main window (composition and wiring), actions and menus, panels, dialogs, canvas, tools."""
