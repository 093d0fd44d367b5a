"""Rollback backends: the only code that talks to infrastructure.

Modules here take plain configuration and connection settings; none imports Django.
"""
