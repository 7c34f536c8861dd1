"""The HTML templates of the plugin's pages: a package so that the wheel and editable installs
both find them as datasette_claude_mem.templates."""
