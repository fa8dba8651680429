"""Research protocols that expand into ordinary runs: data efficiency, k-shot, continual learning, prompting."""
