"""assay's own experiment families; each registers through the ``assay.families`` entry point."""
