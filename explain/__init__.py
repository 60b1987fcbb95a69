"""The explanation stage: SHAP, LIME and integrated gradients, faithfulness, agreement and an HTML report."""
