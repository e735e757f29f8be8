"""One batch edit: optimise targets, then per layer keys and the method's update, then apply."""
