"""Step-time models and memory accounting: pure math over profiles and model shapes."""
