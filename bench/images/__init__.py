"""Image build benchmark: cold and warm build times; image sizes next to the naive seed one."""
