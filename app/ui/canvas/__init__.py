"""The canvas: the view (zoom, pan, tool dispatch), the overlay item that paints the instances, and the
outline geometry it strokes."""
