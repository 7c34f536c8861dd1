"""datasette-claude-mem: Datasette hook implementations. Wiring only; logic lives in modules."""

from datasette import hookimpl
from datasette.permissions import Action
from datasette.resources import DatabaseResource

__version__ = "0.1.0"


@hookimpl
def register_actions(datasette):
    from .server import WRITE_ACTION

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
    from . import server

    if database == server.memory_database_name(datasette):
        server.prepare_memory_connection(conn, server.synchronous(datasette))


@hookimpl
def startup(datasette):
    from . import server

    async def inner():
        await server.startup(datasette)

    return inner


@hookimpl
def register_routes(datasette):
    from . import pages
    from .views import routes

    return routes() + pages.routes()


@hookimpl
def menu_links(datasette, actor):
    from . import pages

    async def inner():
        return await pages.menu_links(datasette, actor)

    return inner


@hookimpl
def extra_template_vars(datasette, request, database, table, view_name):
    if view_name != "row":
        return None
    from . import pages

    async def inner():
        return await pages.row_extras(datasette, request, database, table)

    return inner


@hookimpl
def asgi_wrapper(datasette):
    from . import server
    from .guard import guard

    return lambda app: guard(app, lambda: server.allowed_hosts(datasette))


@hookimpl
def register_commands(cli):
    from .cli import claude_mem

    cli.add_command(claude_mem)
