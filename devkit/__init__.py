"""Tools shared by the test suite and the benchmark (never imported by the app):
`browser` starts the app and drives headless Chromium, `hf_fixtures` makes tiny Hugging Face models offline."""
