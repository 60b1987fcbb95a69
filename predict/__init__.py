"""The prediction stage: label a file with any model folder this project writes, every row back in order."""
