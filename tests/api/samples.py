"""Valid natural instances for each demo model."""

from __future__ import annotations

DIGIT_ZERO = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
              [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
              [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]
DIABETES_ROW = {"age": 50.0, "sex": 1.0, "bmi": 27.5, "bp": 95.0, "s1": 190.0, "s2": 115.0, "s3": 45.0, "s4": 4.0,
                "s5": 4.6, "s6": 92.0}
CANCER_ROW = [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871, 1.095, 0.9053, 8.589,
              153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193, 25.38, 17.33, 184.6, 2019.0, 0.1622,
              0.6656, 0.7119, 0.2654, 0.4601, 0.1189]
TEXTS = ["The striker scored twice in the final.", "Heavy rain will clear by the weekend."]

INSTANCES = {
    "digits-cnn": [DIGIT_ZERO],
    "cancer-mlp": [CANCER_ROW],
    "diabetes-mlp": [DIABETES_ROW],
    "text-lstm": TEXTS,
}
