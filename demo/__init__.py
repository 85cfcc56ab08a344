"""The demo: a mock of the docs' example API, the docs' four example widgets and a seeder."""
