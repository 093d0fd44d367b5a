"""Local stand-ins for real infrastructure, used by the tests and the demo.

They speak the real protocols over HTTP on 127.0.0.1: a moto server for AWS and a
Kubernetes API stand-in for the kubernetes client and kubectl.
"""
