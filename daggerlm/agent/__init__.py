"""The agent scaffold: mini-swe-agent's loop, the actor model, trajectories, the episode runner."""
