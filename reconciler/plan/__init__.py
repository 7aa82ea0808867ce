"""Plans: the action enum, the Change/Plan values, the diff and the planner."""
