"""In-process leadership for Python applications: `Leadership` and `@leaderjob.singleton`."""
