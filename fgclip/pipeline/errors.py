"""The one exception the data engine raises for a user's mistake (bad option, missing input, missing
package); the command line prints its message on one line and exits with code 2."""

from fgclip.errors import UserError


class PipelineError(UserError, RuntimeError):
    """A problem the user can fix, with a one-line message that says how."""
