"""What serving predictions needs beside the models (stockml): named universes to rank
(universes) and the on-demand training budget (training_budget).
"""
