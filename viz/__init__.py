"""Pure figure builders: numpy arrays and labels in, Plotly figures out. No Streamlit, no torch."""
