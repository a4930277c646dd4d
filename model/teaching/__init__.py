"""What the lab teaches and the experiments it runs: the generated corpora, the lessons and their checks, probes, interventions (Break it), activation patching, why RNNs forget."""
