"""User-facing errors: each carries one line that says what is wrong and what is allowed."""


class DrivestackError(Exception):
    """An error caused by input (a file, a flag): the CLI prints it as one line and exits 2."""


class ScenarioError(DrivestackError):
    """A scenario file that cannot be run."""


class MapError(DrivestackError):
    """A map that cannot be read, or a query it cannot answer."""


class RouteError(DrivestackError):
    """A route that cannot be planned on its map."""
