"""The data warehouse: the ETL into Parquet on S3, and the analytics read from it (warehouse).
"""
