"""The safety checks and the safety command: is the sync safe to run?"""
