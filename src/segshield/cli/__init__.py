"""The command line (typer). The only package that imports typer or prints with rich."""
