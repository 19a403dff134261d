"""Editing tools: they turn mouse and key input on the canvas into undo commands and never change the
document themselves (:mod:`app.session.commands` does). :class:`~app.session.editor.Editor` holds the state
the tools share (selection, current category, brush size, hidden instances) and pushes their commands."""
