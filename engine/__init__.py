"""The Service Delivery Framework engine: durable BPMN execution on SpiffWorkflow.

This package is the pure core. It imports neither Flask nor Redis; see README.md here.
"""
