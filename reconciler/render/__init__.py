"""Views of plans and drift: text (Terraform-like), JSON, Markdown. Pure."""
