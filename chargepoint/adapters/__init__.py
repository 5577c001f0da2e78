"""Thin asyncio shells around the sans-I/O core: they do all the I/O."""
