"""datasette-claude-mem: Datasette hook implementations. Wiring only; logic lives in modules."""

from datasette import hookimpl
from datasette.permissions import Action
from datasette.resources import DatabaseResource

from datasette_claude_mem.names import PLUGIN, WRITE_ACTION

__version__ = "0.1.0"


@hookimpl
def register_actions(datasette):
    from datasette_claude_mem import plugin

    # The first hook Datasette calls, before it opens any connection.
    plugin.find_read_only(datasette)
    return [
        Action(
            name=WRITE_ACTION,
            abbr="cmw",
            description="Write to the claude-mem memory database through its JSON API",
            resource_class=DatabaseResource,
        )
    ]


@hookimpl
def prepare_connection(conn, database, datasette):
    from datasette_claude_mem import plugin

    if database == plugin.memory_database_name(datasette):
        plugin.prepare_memory_connection(conn, plugin.state(datasette).config)


@hookimpl
def startup(datasette):
    from datasette_claude_mem import plugin

    async def inner():
        await plugin.startup(datasette)

    return inner


@hookimpl
def shutdown(datasette):
    from datasette_claude_mem import plugin

    async def inner():
        await plugin.shutdown(datasette)

    return inner


@hookimpl
def prepare_jinja2_environment(env, datasette):
    from datasette_claude_mem.pages import formatting

    formatting.prepare_environment(env)


@hookimpl
def extra_css_urls(datasette):
    return [datasette.urls.static_plugins(PLUGIN, "claude-mem.css")]


@hookimpl
def register_routes(datasette):
    from datasette_claude_mem.api import export, login
    from datasette_claude_mem.api.routes import routes
    from datasette_claude_mem.mcp import endpoint
    from datasette_claude_mem.pages import forget, search, views

    return (
        routes()
        + endpoint.routes()
        + views.routes()
        + search.routes()
        + forget.routes()
        + export.routes()
        + login.routes()
    )


@hookimpl
def menu_links(datasette, actor):
    from datasette_claude_mem.pages import views

    async def inner():
        return await views.menu_links(datasette, actor)

    return inner


@hookimpl
def extra_template_vars(datasette, request, database, table, view_name):
    if view_name != "row":
        return None
    from datasette_claude_mem.pages import views

    async def inner():
        return await views.row_extras(datasette, request, database, table)

    return inner


@hookimpl
def asgi_wrapper(datasette):
    from datasette_claude_mem import plugin
    from datasette_claude_mem.api.guard import guard

    return lambda app: guard(app, lambda: plugin.allowed_hosts(datasette))


@hookimpl
def register_commands(cli):
    from datasette_claude_mem.cli import claude_mem

    cli.add_command(claude_mem)
