"""The one exception the data engine raises for a user's mistake (bad option, missing input, missing
package); the command line prints its message on one line and exits with code 2."""


class PipelineError(RuntimeError):
    """A problem the user can fix, with a one-line message that says how."""
