"""Training: the loop (set-up, resume, epoch, save), task heads, recipes, batch size, distributed helpers."""
