"""Built-in ppeval suites, one subpackage each with its own data/."""
