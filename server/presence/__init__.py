"""Presence: who is subscribed to a channel, across every node of the cluster."""
