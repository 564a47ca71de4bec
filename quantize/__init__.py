"""SelfMIS Edge."""
