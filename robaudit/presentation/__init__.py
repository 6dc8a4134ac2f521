"""The presentation layer: a folder of reports as an HTML page or Markdown, built from what each report's
audit says about itself (tables, key numbers, flags, figures) through the audit registry."""
