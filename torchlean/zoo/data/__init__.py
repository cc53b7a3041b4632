"""Data files shipped with the zoo (a package so that setuptools installs them)."""
