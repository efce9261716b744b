"""AWS itself: every boto3 client (aws), SigV4 signing (sigv4) and Secrets Manager (secrets).
"""
