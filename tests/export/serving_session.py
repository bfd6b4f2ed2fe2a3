"""A SavedModel in a TF1 Session, held the way TF Serving's loader holds it,
and `run(signature, **inputs)`: a Predict call, feeding inputs by tensor
name. TensorFlow and NumPy only (the tests run it where tfgpt2, Keras and
tensorflow-text cannot be imported); bench/serving.py uses it too."""

import numpy as np
import tensorflow as tf


class Served:
    def __init__(self, path):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        self.signatures = meta.signature_def

    def run(self, name, **inputs):
        sig = self.signatures[name]
        names = sorted(sig.outputs)
        values = self.session.run([sig.outputs[n].name for n in names],
                                  {sig.inputs[k].name: v for k, v in inputs.items()})
        return dict(zip(names, values))


_DTYPES = dict(max_new_tokens=np.int32, temperature=np.float32, top_k=np.int32,
               top_p=np.float32, seed=np.int32)


def request(prompts, **settings):
    """The inputs of a `generate` call: `prompts` and one value per prompt
    of each setting, in the signature's dtypes."""
    out = {k: np.asarray(v, _DTYPES[k]) for k, v in settings.items()}
    out["prompts"] = np.asarray([p.encode() if isinstance(p, str) else p for p in prompts],
                                object)
    return out
