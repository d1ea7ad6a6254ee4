"""A model server speaking TF Serving's REST and gRPC APIs, with ScaNN's ops registered.

Stock TF Serving (and Vertex AI's prebuilt TensorFlow containers) cannot load the pushed model:
its ScaNN index uses ops they do not have. Run `python -m serving --help`.
"""
