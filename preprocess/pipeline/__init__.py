"""The pipeline driver: plan the stages, fingerprint them, run what is out of date."""
