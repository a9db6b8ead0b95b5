"""Output storage chosen by URL: file://, s3://, memory://."""
