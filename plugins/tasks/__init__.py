"""Built-in tasks: detection and classification (each a light registration module plus its implementation)."""
