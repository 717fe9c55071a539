"""What runs jobs and ends them at D: the supervisor and its guardian process."""
