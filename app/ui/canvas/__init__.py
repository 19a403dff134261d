"""The canvas: the view (zoom, pan, tool dispatch) and the instance overlay it draws."""
