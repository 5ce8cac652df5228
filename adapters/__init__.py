"""Platform adapters: parse platform events into neutral messages and send replies back."""
